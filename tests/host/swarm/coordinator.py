"""The host's coordinator, making the calls the seed's coordinator makes (ADR 017's usage)."""

from swarm import task_queue
from swarm.event_log import EventType, log_event


class SwarmCoordinator:
    def post_task(self, description: str) -> str:
        task_id = task_queue.create_task(description)
        task_queue.update_task(task_id, status="bidding")
        log_event(EventType.TASK_CREATED, source="coordinator", task_id=task_id,
                  data={"description": description})
        log_event(EventType.TASK_BIDDING, source="coordinator", task_id=task_id)
        return task_id

    def bid(self, task_id: str, agent_id: str, bid_sats: float) -> None:
        log_event(EventType.BID_SUBMITTED, source=agent_id, task_id=task_id, agent_id=agent_id,
                  data={"bid_sats": bid_sats})

    def assign(self, task_id: str, agent_id: str, bid_sats: float) -> None:
        task_queue.update_task(task_id, status="assigned", assigned_agent=agent_id)
        log_event(event_type=EventType.TASK_ASSIGNED, source="coordinator", task_id=task_id,
                  agent_id=agent_id, data={"bid_sats": bid_sats})

    def complete(self, task_id: str, agent_id: str, result: str) -> None:
        task_queue.update_task(task_id, status="completed")
        log_event(EventType.TASK_COMPLETED, source="coordinator", task_id=task_id,
                  agent_id=agent_id, data={"result": result})

    def think(self, thought: str) -> None:
        try:  # noqa: SIM105  (the seed's thinking engine is written so)
            log_event(EventType.TIMMY_THOUGHT, source="thinking-engine", agent_id="timmy",
                      data={"thought_id": "th-1", "content": thought})
        except Exception:
            pass

    def capture_error(self, exc: Exception) -> None:
        log_event(EventType.ERROR_CAPTURED, source="error-capture",
                  data={"error_type": type(exc).__name__, "message": str(exc)[:500],
                        "hash": "abc123", "file": __file__, "line": 42,
                        "git_branch": "main", "git_commit": "deadbeef"})
        log_event(EventType.BUG_REPORT_CREATED, source="error-capture", task_id="bug-1",
                  data={"error_hash": "abc123", "title": f"[BUG] {type(exc).__name__}"})
