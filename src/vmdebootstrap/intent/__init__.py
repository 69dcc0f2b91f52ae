"""The user's intent: the option table, frozen settings, config files."""
