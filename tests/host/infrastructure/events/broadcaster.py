"""The host's WebSocket broadcaster: it records what it would push to the activity feed."""


class EventBroadcaster:
    def __init__(self) -> None:
        self.sent: list[object] = []

    def broadcast_sync(self, entry: object) -> None:
        self.sent.append(entry)


event_broadcaster = EventBroadcaster()
