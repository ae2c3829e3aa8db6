"""General file I/O every stage may use: safe photo decoding (`images`), formula-safe CSV (`csvsafe`), atomic
writes (`atomic`), whole-file sha256 (`hashing`). Nothing here depends on a model or a dataset layout."""
