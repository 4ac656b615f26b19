"""Runnable examples of tornado-kit: numbered small ones and the full reference app."""
