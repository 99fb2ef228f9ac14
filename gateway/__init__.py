"""Gateways for devices that do not speak our MQTT contract: GB/T 26875.3 UTDs over TCP."""
