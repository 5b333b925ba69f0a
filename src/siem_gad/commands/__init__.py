"""Built-in command groups, registered through the `register_commands` hook like a plugin's."""
