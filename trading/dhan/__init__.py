"""Dhan (DhanHQ v2) broker adapter: REST client, feed codec, WebSocket clients, simulator."""
