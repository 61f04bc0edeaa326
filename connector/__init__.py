"""jobylon-connector: keeps a partner's interview system and Jobylon's calendar in step."""

__version__ = "0.1.0"
