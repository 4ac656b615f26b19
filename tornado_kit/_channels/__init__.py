"""Channels (private package): what both realtime transports hang off, per application.

``_hub`` (the per-application ``ChannelHub``: one broker subscription
per channel, typed members), ``_delivery`` (one broker message, decoded once
for every member), ``_splice`` (the replay-then-live hand-over of a member
that resumes) and ``_keepalive`` (one timer per interval for idle members).
SSE streams are members today; WebSocket rooms join them in the channels
issue (CHANNELS.md).
"""
