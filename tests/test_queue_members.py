"""Queue members of our own as the SQL drivers store them (one JSON object per queue)."""

from __future__ import annotations

import attrs
from twisted.trial.unittest import SynchronousTestCase

from fireworq.model import MemberCodec, QueueDefinition, own_member, own_members
from fireworq.storage.sqlcommon import encode_members, with_stored_members

PLAIN = QueueDefinition("mail", 200, 20)


class StoredMembersTests(SynchronousTestCase):
    def test_defaultsAreNotStored(self) -> None:
        """A definition with every member of ours at its default stores an empty object."""
        self.assertEqual(own_members(PLAIN), {})
        self.assertEqual(encode_members(PLAIN), b"{}")

    def test_roundTrip(self) -> None:
        definition = QueueDefinition("mail", 200, 20, failed_job_ttl=60, failed_job_limit=9)
        stored = encode_members(definition)
        self.assertEqual(stored, b'{"failed_job_ttl":60,"failed_job_limit":9}')
        self.assertEqual(with_stored_members(PLAIN, 0, stored), definition)
        self.assertEqual(with_stored_members(PLAIN, 1, stored),
                         QueueDefinition("mail", 200, 20, failed_job_ttl=60,
                                         failed_job_limit=9, paused=True))

    def test_noRow(self) -> None:
        """A queue without a row of ours (defined by Fireworq) has the defaults."""
        self.assertEqual(with_stored_members(PLAIN, None, None), PLAIN)

    def test_foreignContent(self) -> None:
        """Members of a newer version, values of the wrong type and text that is not a JSON
        object read as the defaults."""
        for stored in (b'{"delivery_mode":"fifo"}', b'{"failed_job_ttl":true}',
                       b'{"failed_job_ttl":"60"}', b'{"failed_job_ttl":1.5}', b"[]", b"{",
                       b"\xff", b"null"):
            self.assertEqual(with_stored_members(PLAIN, 0, stored), PLAIN, stored)
        self.assertEqual(
            with_stored_members(PLAIN, 0, b'{"failed_job_limit":3,"later":{"x":1}}'),
            QueueDefinition("mail", 200, 20, failed_job_limit=3))


def _tags(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(tag, str) for tag in value):
        raise TypeError("tags must be a list of strings")
    return tuple(value)


@attrs.frozen
class TaggedQueue(QueueDefinition):
    """A definition with a member that JSON cannot hold as it is (a tuple)."""

    tags: tuple[str, ...] = own_member((), MemberCodec(encode=list, decode=_tags))


class MemberCodecTests(SynchronousTestCase):
    def test_roundTrip(self) -> None:
        tagged = TaggedQueue("mail", 200, 20, tags=("a", "b"))
        stored = encode_members(tagged)
        self.assertEqual(stored, b'{"tags":["a","b"]}')
        self.assertEqual(with_stored_members(TaggedQueue("mail", 200, 20), 0, stored), tagged)

    def test_undecodable(self) -> None:
        """A stored value the member's decoder refuses reads as the default."""
        plain = TaggedQueue("mail", 200, 20)
        self.assertEqual(with_stored_members(plain, 0, b'{"tags":[1]}'), plain)
        self.assertEqual(with_stored_members(plain, 0, b'{"tags":"a"}'), plain)
