"""Codegen: arena planning, weights blob, C rendering from templates (reads the IR only)."""
