"""Operator views: the dashboard's files, hook link pages, live streams, terminal output."""
