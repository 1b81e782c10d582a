"""Live events: every event that matters is a row first, then news on the bus, then a frame
on the person's WebSocket (``/ws``), resumable from the last id a client saw."""
