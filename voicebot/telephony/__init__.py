"""Telephone lines into the bot: a SIP user agent (RTP, G.711) and Asterisk's AudioSocket.

Each is a :class:`~voicebot.transports.line.LiveCall` on 8 kHz audio: ``narrowband`` converts it
to and from the call's 16 kHz frames.
"""
