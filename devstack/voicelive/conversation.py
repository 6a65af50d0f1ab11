"""The server-side conversation: ordered items with `previous_item_id` chaining, and user-turn counting."""

from __future__ import annotations

from typing import Any

__all__ = ["Conversation"]

JSON = dict[str, Any]


class Conversation:
    """Items by id, in insertion order. `user_turns` counts user messages (text or audio) added so far."""

    def __init__(self) -> None:
        self._items: dict[str, JSON] = {}
        self.user_turns = 0
        self.last_user_text = ""
        self.last_user_item: str | None = None

    @property
    def last_id(self) -> str | None:
        return next(reversed(self._items), None)

    def add(self, item: JSON, *, user_text: str | None = None) -> str | None:
        """Append `item` (must have an `id`); returns the previous item's id (None for the first item)."""
        previous = self.last_id
        self._items[item["id"]] = item
        if item.get("type") == "message" and item.get("role") == "user":
            self.user_turns += 1
            self.last_user_text = user_text or ""
            self.last_user_item = item["id"]
        return previous

    def set_user_text(self, item_id: str, text: str) -> None:
        """A transcript arrived for user item `item_id`; it is the user's text if that is the newest turn."""
        if item_id == self.last_user_item:
            self.last_user_text = text

    def get(self, item_id: str) -> JSON | None:
        return self._items.get(item_id)

    def delete(self, item_id: str) -> bool:
        return self._items.pop(item_id, None) is not None

    def pending_tool_outputs(self) -> list[JSON]:
        """`function_call_output` items added since the last function call or user message (newest last)."""
        outputs: list[JSON] = []
        for item in reversed(self._items.values()):
            if item.get("type") != "function_call_output":
                break
            outputs.append(item)
        return outputs[::-1]

    def name_of_call(self, call_id: str) -> str:
        for item in self._items.values():
            if item.get("type") == "function_call" and item.get("call_id") == call_id:
                return str(item.get("name"))
        return "unknown_tool"
