"""The contact-centre server: media WebSocket, queue, agent desk, dashboard, metrics, hot reload."""
