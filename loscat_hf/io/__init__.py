"""General file I/O every stage may use: safe photo decoding (`images`), formula-safe CSV (`csvsafe`), atomic
writes (`atomic`). Nothing here knows about LoSCAT."""
