"""Command line: parse arguments, render text and JSON; no system logic."""
