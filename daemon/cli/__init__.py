"""The `cltool` command and its views (the only package that imports click)."""
