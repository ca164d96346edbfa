"""The real-time decision service: events in, an offer or none out, every decision logged to the campaign
database."""
