"""The article builder: the paper's figures, tables and macros from batch runs."""
