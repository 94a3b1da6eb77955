"""The dashboard's files, the pages behind hook links, and the live event streams."""
