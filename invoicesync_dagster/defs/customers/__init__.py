"""Customers: the buyer identity of every customer billed on a day, and its checks."""
