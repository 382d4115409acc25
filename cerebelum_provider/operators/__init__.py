"""Operators: resume one execution, resume many, start a workflow."""
