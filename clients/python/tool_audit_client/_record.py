"""What one call to tool_audit.log_call() carries, built the same way by every
logger: JSON values wrapped for psycopg, a client-made event_id, a failure
result from an exception."""

import datetime
import functools
import inspect
import json
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Union

from psycopg.types.json import Jsonb

# already_stored: log_call() (1.5) returns the row stored first to a retry of
# the same call (same tool_call_id, or same event_id); that row was recorded
# before this statement began, a new one during it
LOG_CALL_SQL = ("SELECT id, event_id::text, recorded_at < statement_timestamp() "
                "FROM tool_audit.log_call(%s, %s, %s, %s, %s)")
LOG_EVENT_SQL = "SELECT id, event_id::text FROM tool_audit.log_event(%s, %s, %s, %s)"
# the begin/end pattern (1.5, doc/recording.md "Calls that survive rollback"):
# each half written autonomously (committed whatever the caller's transaction
# does); begin_call() sets tool_audit.call for the rest of the transaction
BEGIN_CALL_SQL = "SELECT tool_audit.begin_call(%s, %s, %s)::text"
END_CALL_SQL = "SELECT id, event_id::text FROM tool_audit.end_call(%s::uuid, %s, %s)"

# A tool's values are not always JSON-ready (datetime, Decimal, UUID): they are
# written as their str() rather than failing the audit of the call.
_dumps = functools.partial(json.dumps, default=str, ensure_ascii=False)

ContextArg = Union[Mapping[str, Any], Callable[[], Mapping[str, Any]], None]


def jsonb(value: Any) -> Optional[Jsonb]:
    """A dict, list, string, number or bool as a jsonb parameter (psycopg
    refuses a bare dict: "cannot adapt type 'dict'"); None stays SQL NULL."""
    if value is None:
        return None
    return Jsonb(value, dumps=_dumps)


def failure_result(exc: BaseException) -> dict:
    """The result logged for a tool that raised: log_call() reads
    "success": false and "error" from it (doc/recording.md)."""
    return {"success": False, "error": str(exc) or type(exc).__name__,
            "error_type": type(exc).__name__}


def resolve_context(*parts: ContextArg) -> dict:
    """Merge context mappings (later ones win); a callable is called first,
    so per-request values (user, conversation, turn) can come from a
    contextvar or the agent's state."""
    out: dict = {}
    for part in parts:
        if callable(part):
            part = part()
        if part:
            out.update(part)
    return out


# event ids of calls that have a tool_call_id: a UUID v5 of the call key in
# this namespace (uuid5(NAMESPACE_URL, "urn:tool_audit:tool_call_id")), the
# same in the TypeScript helper
_CALL_KEY_NAMESPACE = uuid.UUID("8d77e3ef-4350-511a-ac8f-ad3dac6fda6d")


def call_key_event_id(context: Mapping[str, Any]) -> Optional[str]:
    """The event_id of a call with a tool_call_id: derived from its key
    (tenant_id, conversation_id, tool_call_id), so that logging the same
    call again, from this process or another, brings the same event_id and
    gets the stored row back; None without a tool_call_id."""
    call_id = context.get("tool_call_id")
    if call_id is None or call_id == "":
        return None
    key = [context.get("tenant_id"), context.get("conversation_id"), str(call_id)]
    key = [None if v is None else str(v) for v in key]
    return str(uuid.uuid5(_CALL_KEY_NAMESPACE,
                          json.dumps(key, separators=(",", ":"), ensure_ascii=False)))


def utc_now_iso() -> str:
    """The client's time as log_call()'s context field started_at takes it:
    ISO 8601 with its UTC offset."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat()


@dataclass
class CallRecord:
    """One tool call to log. event_id is made on the client (a UUID) unless
    the context brings one: a write that is retried after a lost connection
    gets the row stored first back from log_call() (1.5; keyed on the
    context's tool_call_id when there is one, else on the event_id) instead
    of storing it twice. A retry repeats the record exactly, started_at
    included."""
    tool_name: str
    arguments: Any = None
    result: Any = None
    duration_ms: Optional[float] = None
    context: dict = field(default_factory=dict)

    def __post_init__(self):
        self.context = dict(self.context)
        if not self.context.get("event_id"):
            self.context["event_id"] = call_key_event_id(self.context) or str(uuid.uuid4())

    @property
    def event_id(self) -> str:
        return str(self.context["event_id"])

    def params(self) -> tuple:
        duration = None if self.duration_ms is None else round(float(self.duration_ms), 3)
        arguments = self.arguments
        if arguments is not None and not isinstance(arguments, Mapping):
            # log_call() takes arguments as a JSON object (an array or a
            # scalar is refused): wrapped as its hint says
            arguments = {"value": list(arguments) if isinstance(arguments, tuple) else arguments}
        return (self.tool_name, jsonb(arguments), jsonb(self.result), duration,
                jsonb(self.context))

    def begin_params(self) -> tuple:
        """begin_call()'s parameters: tool name, arguments, context."""
        tool_name, arguments, _, _, context = self.params()
        return (tool_name, arguments, context)

    def end_params(self, call_id: str) -> tuple:
        """end_call()'s parameters: the call, result, duration."""
        _, _, result, duration, _ = self.params()
        return (call_id, result, duration)


@dataclass(frozen=True)
class LoggedCall:
    """What the database stored: the row's id and event_id. already_stored is
    True when the row was written by an earlier attempt: log_call() returned
    it to a retry (or, on a server before 1.5, refused the retry's event_id:
    the id is then None)."""
    id: Optional[int]
    event_id: str
    already_stored: bool = False


def bound_arguments(fn: Callable, args: tuple, kwargs: dict) -> dict:
    """A function's call arguments as a JSON object: parameter name -> value
    (defaults applied; *args under their name as a list). self/cls left out."""
    try:
        bound = inspect.signature(fn).bind(*args, **kwargs)
    except (TypeError, ValueError):
        return {"args": list(args), **kwargs}
    bound.apply_defaults()
    out = {}
    for name, value in bound.arguments.items():
        if name in ("self", "cls"):
            continue
        if isinstance(value, tuple):
            value = list(value)
        out[name] = value
    return out


def is_event_id_conflict(exc: BaseException) -> bool:
    """A unique violation on event_id: the row is already stored."""
    diag = getattr(exc, "diag", None)
    if getattr(exc, "sqlstate", None) != "23505" or diag is None:
        return False
    text = " ".join(str(x) for x in (diag.constraint_name, diag.message_detail,
                                     diag.message_primary) if x)
    return "event_id" in text
