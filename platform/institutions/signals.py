"""Signals other apps listen to (the OAuth app revokes tokens on both), so this app need not know them."""

from django.dispatch import Signal

#: An institution's status changed; sent inside the transaction. Arguments: institution, from_status, to_status.
status_changed = Signal()

#: A member left or was removed from an institution. Arguments: institution, user.
member_removed = Signal()
