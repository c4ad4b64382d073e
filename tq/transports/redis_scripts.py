"""The Lua script behind tq's Redis transport: acks, a batch claim and the idle wake-up, atomically.

One script call does what kombu's transport does in one round trip per step: it deletes the
acked tags from kombu's ``unacked`` hash and ``unacked_index`` zset, pops up to N messages from
the queue lists in kombu's BRPOP order (every priority step of every queue, highest first), and
records each popped message as unacked with kombu's field format (``[payload, exchange,
routing_key]`` under its delivery tag, scored by the client's clock), so a popped message never
exists only in a reply on the wire. When the queues run dry it reads their lengths: with
``CLIENT TRACKING`` on, that read makes Redis push an invalidation the next time any of those
lists changes, which is how an idle consumer learns a message arrived without popping it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

#: Most tags one call acks (Lua's unpack() has a stack limit near 8,000).
ACKS_PER_CALL_MAX = 1000

# KEYS: unacked hash, unacked_index zset, then the queue lists in kombu's BRPOP order (every
# queue at the first priority step, then every queue at the next step, ...).
# ARGV: score, count, queue count, rotate ("1": round robin), ack count, acks...,
# then one record flag per queue ("1"/"0").
# Each message is taken as kombu's BRPOP would take it: the first non-empty list in that order,
# the queue it came from then moved to the end of the order (round robin). A list found empty
# is not asked again: nothing else runs while the script does.
# Returns a flat list: queue number (1-based), raw payload, queue number, payload, ...
CLAIM_SCRIPT = """
local unacked, index = KEYS[1], KEYS[2]
local score, want = ARGV[1], tonumber(ARGV[2])
local nqueues, rotate, nacks = tonumber(ARGV[3]), ARGV[4] == '1', tonumber(ARGV[5])
if nacks > 0 then
  local tags = {}
  for i = 1, nacks do tags[i] = ARGV[5 + i] end
  redis.call('ZREM', index, unpack(tags))
  redis.call('HDEL', unacked, unpack(tags))
end
local flags = 5 + nacks
local function fields(item)
  local ok, message = pcall(cjson.decode, item)
  if not ok then
    -- Redis's cjson refuses a lone surrogate escape (Python's json writes one for a string
    -- decoded with surrogateescape); the fields read here never hold one.
    message = cjson.decode((string.gsub(item, '\\\\u[dD][89a-fA-F]%x%x', '\\\\ufffd')))
  end
  local properties = message['properties']
  local info = properties['delivery_info']
  return properties['delivery_tag'], cjson.encode(info['exchange']),
    cjson.encode(info['routing_key'])
end
local out, got, empty, order = {}, 0, {}, {}
for number = 1, nqueues do order[number] = number end
local nsteps = nqueues > 0 and (#KEYS - 2) / nqueues or 0
while got < want do
  local found = false
  for step = 0, nsteps - 1 do
    for position, number in ipairs(order) do
      local key = 3 + step * nqueues + number - 1
      if not empty[key] then
        local item = redis.call('RPOP', KEYS[key])
        if item then
          got = got + 1
          out[#out + 1] = number
          out[#out + 1] = item
          if ARGV[flags + number] == '1' then
            local ok, tag, exchange, routing_key = pcall(fields, item)
            if ok and tag then
              redis.call('HSET', unacked, tag,
                '[' .. item .. ',' .. exchange .. ',' .. routing_key .. ']')
              redis.call('ZADD', index, score, tag)
            end
          end
          if rotate then
            table.remove(order, position)
            order[#order + 1] = number
          end
          found = true
          break
        end
        empty[key] = true
      end
    end
    if found then break end
  end
  if not found then break end
end
if want > 0 and got < want then
  for key = 3, #KEYS do redis.call('LLEN', KEYS[key]) end
end
return out
"""


@dataclass(frozen=True)
class ClaimCall:
    """One call of the claim script: what it acks, what it may claim and where it came from."""

    acks: Sequence[str]
    queues: Sequence[str]
    count: int
    score: str
    #: Whether the queues take turns (kombu's round_robin order) or keep their order.
    rotate: bool = True

    @property
    def claims(self) -> bool:
        """Whether this call pops messages (and records them under score)."""
        return self.count > 0 and bool(self.queues)


def claim_keys(*, prefix: str, unacked: str, index: str, queue_keys: Sequence[str]) -> list[str]:
    """The script's KEYS: both unacked keys, then the queue lists, all with the global prefix."""
    return [prefix + unacked, prefix + index, *(prefix + key for key in queue_keys)]


def claim_args(call: ClaimCall, record: Sequence[bool]) -> list[str | int]:
    """The script's ARGV for one call; record has one flag per queue of call.queues."""
    count = call.count if call.claims else 0
    return [
        call.score,
        count,
        len(call.queues),
        "1" if call.rotate else "0",
        len(call.acks),
        *call.acks,
        *("1" if flag else "0" for flag in record),
    ]


def parse_claim_reply(reply: Sequence[object], queues: Sequence[str]) -> list[tuple[str, bytes]]:
    """Turn the script's flat reply into (queue, raw payload) pairs, in claim order."""
    pairs = []
    for position in range(0, len(reply), 2):
        number = reply[position]
        payload = reply[position + 1]
        assert isinstance(number, int) and isinstance(payload, bytes), reply
        pairs.append((queues[number - 1], payload))
    return pairs


def pack_command(args: Sequence[str | int | bytes]) -> list[bytes]:
    """One Redis command in the wire protocol, as redis-py's send_packed_command takes it (the
    same bytes its packer makes for these argument types, in a fifth of the time: the worker's
    loop sends one claim call per few tasks)."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return [b"".join(parts)]
