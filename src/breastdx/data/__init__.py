"""Data: readers per dataset format, validation, splits, duplicate detection and transforms."""
