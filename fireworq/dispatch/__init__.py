"""Dispatching: one dispatcher per queue grabs due jobs and delivers them."""
