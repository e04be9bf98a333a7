"""The agent side of printbridge's MQTT protocol: the simulator (`printbridge simulate`), the agent
message builder, the agent's MQTT client and a snapshot JPEG. Tests and benchmarks build their agents
and publishers on these."""
