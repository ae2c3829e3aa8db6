"""General file I/O every stage may use: safe photo decoding (`images`), formula-safe CSV (`csvsafe`), atomic
writes (`atomic`). Nothing here depends on a model or a dataset layout."""
