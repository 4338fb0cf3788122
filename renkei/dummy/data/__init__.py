"""Small tables the synthetic population is drawn from (each file names its source)."""
