"""Text for staff: Japanese era dates (和暦)."""
