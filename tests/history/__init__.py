"""Tests of the history tools: replay, verify, export/import, rebuild, HTTP history, schemas."""
