"""printbridge: the Obico printer API served from SQLite, kept current over MQTT."""

__version__ = "0.1.0"
