#!/usr/bin/env python3
"""The four SSM session detections of docs/detections.md, written plainly in Python.

A reference for `rule-harness bench`: it times the rule against what a straightforward
streaming implementation costs, and checks that both raise the same alerts. It reads
NDJSON CloudTrail records from the files named (or stdin), keeps its state in
dictionaries, and writes one JSON alert per line: rule id, title, event time, dedup key
and context. The defaults of the rule's configuration; no allowlist.

It judges records in the order given and keeps everything in memory: it does not sweep
state, so it equals the rule on streams that arrive in event-time order (the generated
corpora), where the rule's sweep and pruning forget only what no record can use.
"""

import ipaddress
import json
import sys
import time
from datetime import datetime, timezone

SECOND = 1000
HOUR = 3600 * SECOND
DAY = 24 * HOUR
ACTIVATION = 14 * DAY
TRAINING = 30 * DAY
BASELINE_DEDUP = 3 * DAY
WINDOW = HOUR
THRESHOLD = 3
MULTIPLE_DEDUP = HOUR
MAX_LATENESS = TRAINING
CLOCK_SKEW = HOUR

UNKNOWN = "unknown"
DEFAULT_DOCUMENT = "SSM-SessionManagerRunShell"


def millis(text):
    """eventTime: RFC 3339, or `YYYY-MM-DD HH:MM:SS[.f]` read as UTC; to the millisecond."""
    if not isinstance(text, str) or not text:
        return None
    stamp = text.replace("Z", "+00:00").replace("z", "+00:00")
    if "." in stamp:  # Python reads at most six digits of a fraction
        head, _, tail = stamp.partition(".")
        digits = len(tail) - len(tail.lstrip("0123456789"))
        stamp = head + "." + tail[:min(digits, 6)] + tail[digits:]
    try:
        parsed = datetime.fromisoformat(stamp)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    delta = parsed - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return (delta.days * 86400 + delta.seconds) * SECOND + delta.microseconds // 1000


def text(value):
    """A field's string, `None` when absent, null or empty."""
    return value if isinstance(value, str) and value else None


def source_network(ip):
    if ip is None:
        return UNKNOWN
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


def actor(record, identity):
    """Panther's get_actor_user."""
    kind = text(identity.get("type"))
    unknown = f"Unknown{kind or ''}"
    if kind == "Root":
        return text(identity.get("userName")) or text(identity.get("accountId")) or "UnknownRootUser"
    if kind in ("IAMUser", "Directory", "Unknown", "SAMLUser", "WebIdentityUser"):
        return text(identity.get("userName")) or unknown
    if kind in ("AssumedRole", "Role", "FederatedUser"):
        issuer = ((identity.get("sessionContext") or {}).get("sessionIssuer") or {})
        name = text(issuer.get("userName")) or unknown
        if name.startswith("AWSReservedSSO_"):
            principal = text(identity.get("principalId")) or unknown
            parts = principal.split(":")
            return parts[1] if len(parts) > 1 else principal
        return name
    if kind == "IdentityCenterUser":
        return text((record.get("additionalEventData") or {}).get("UserName")) or unknown
    if kind in ("AWSService", "AWSAccount"):
        return text(record.get("sourceIdentity")) or unknown
    if record.get("eventType") == "AwsServiceEvent":
        return text(identity.get("invokedBy")) or "UnknownAwsServiceEvent"
    return "UnknownUser"


def rfc3339(at):
    moment = datetime.fromtimestamp(at / 1000, tz=timezone.utc)
    if at % SECOND:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at % SECOND:03d}Z"
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class Identity:
    __slots__ = ("last_session", "seen", "targets")

    def __init__(self):
        self.last_session = None
        self.seen = {}  # (feature, value) -> latest use
        self.targets = {}  # target -> latest start


class Reference:
    def __init__(self, out):
        self.out = out
        self.not_after = int(time.time() * 1000) + CLOCK_SKEW
        self.watermark = None
        self.history_start = None
        self.identities = {}
        self.silenced = {}  # (rule id, dedup key) -> end of its dedup period

    def record(self, record):
        if record.get("eventSource") != "ssm.amazonaws.com" or record.get("eventName") != "StartSession":
            return
        at = millis(record.get("eventTime"))
        if at is None or at > self.not_after:
            return
        if self.watermark is not None:
            if self.watermark - at > MAX_LATENESS:
                return
            if at - self.watermark > TRAINING:
                self.history_start = None
        identity = record.get("userIdentity") or {}
        request = record.get("requestParameters") or {}
        who = text(identity.get("arn")) or text(identity.get("principalId")) or UNKNOWN
        succeeded = text(record.get("errorCode")) is None and text(record.get("errorMessage")) is None
        source_ip = text(record.get("sourceIPAddress"))
        session = {
            "account": text(record.get("recipientAccountId")) or text(identity.get("accountId")) or UNKNOWN,
            "actor": actor(record, identity),
            "document": text(request.get("documentName")) or DEFAULT_DOCUMENT,
            "identity": who,
            "identity_type": text(identity.get("type")),
            "region": text(record.get("awsRegion")),
            "session_id": text((record.get("responseElements") or {}).get("sessionId")),
            "source_ip": source_ip,
            "source_network": source_network(source_ip),
            "target": text(request.get("target")) or UNKNOWN,
            "user_agent": text(record.get("userAgent")),
        }
        state = self.identities.setdefault(who, Identity())
        if succeeded:
            self.baseline(record, session, state, at)
        self.multiple_sessions(record, session, state, at)
        if succeeded and self.history_start is None:
            self.history_start = at
        self.watermark = at if self.watermark is None else max(self.watermark, at)

    def baseline(self, record, s, state, at):
        def known(seen):
            return seen is not None and at - seen <= TRAINING

        features = [("target", s["target"]), ("source_network", s["source_network"]), ("document", s["document"])]
        active = self.history_start is not None and at - self.history_start >= ACTIVATION
        unusual = [name for name, value in features if not known(state.seen.get((name, value)))]
        who = s["identity"].split(":", 5)[5] if s["identity"].startswith("arn:") and s["identity"].count(":") >= 5 else s["identity"]
        where = f"{s['target']} in {s['account']}"
        if not active:
            rule, title, key = "AWS.SSM.SessionStarted", f"{who} started an AWS SSM session on {where}", f"{s['identity']}|{s['target']}"
        elif not known(state.last_session):
            rule, title, key = "AWS.SSM.UnusualIdentity", f"Unusual identity {who} started an AWS SSM session on {where}", s["identity"]
        elif unusual:
            rule = "AWS.SSM.UnusualSession"
            title = f"{who} started an unusual AWS SSM session on {where} (new {', '.join(unusual)})"
            key = "|".join([s["identity"], s["target"], s["source_network"], s["document"]])
        else:
            rule, title, key = "AWS.SSM.SessionStarted", f"{who} started an AWS SSM session on {where}", f"{s['identity']}|{s['target']}"
        context = dict(s)
        context["previous_session_time"] = rfc3339(state.last_session) if state.last_session is not None else None
        if rule == "AWS.SSM.UnusualSession":
            context["unusual_features"] = unusual
        self.alert(rule, title, at, key, context, BASELINE_DEDUP, record)
        state.last_session = at if state.last_session is None else max(state.last_session, at)
        for feature in features:
            state.seen[feature] = max(state.seen.get(feature, at), at)

    def multiple_sessions(self, record, s, state, at):
        targets = state.targets
        targets[s["target"]] = max(targets.get(s["target"], at), at)
        newest = max(targets.values())
        for target in [t for t, started in targets.items() if newest - started >= WINDOW]:
            del targets[target]
        near = sorted(t for t, started in targets.items() if t == s["target"] or abs(started - at) < WINDOW)
        if len(near) < THRESHOLD:
            return
        context = {key: record.get(key) for key in
                   ("awsRegion", "eventName", "eventSource", "recipientAccountId", "sourceIPAddress", "userAgent", "userIdentity")}
        context["targets"] = near
        context["target_count"] = len(near)
        title = f"Multiple SSM Sessions Started by {s['actor']} in {s['account']}"
        self.alert("AWS.SSM.MultipleSessions", title, at, s["identity"], context, MULTIPLE_DEDUP, record)

    def alert(self, rule, title, at, key, context, period, record):
        until = self.silenced.get((rule, key))
        if until is not None and at < until:
            return
        self.silenced[(rule, key)] = at + period
        line = {
            "rule_id": rule,
            "title": title,
            "event_time": datetime.fromtimestamp(at // 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "dedup_key": key,
            "context": context,
            "event_id": text(record.get("eventID")),
        }
        self.out.write(json.dumps(line, separators=(",", ":"), ensure_ascii=False))
        self.out.write("\n")


def main(paths):
    reference = Reference(sys.stdout)
    for stream in ([open(p, encoding="utf-8") for p in paths] or [sys.stdin]):
        for line in stream:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                reference.record(record)


if __name__ == "__main__":
    main(sys.argv[1:])
