"""The staff app (``pmp serve``): campaigns, runs and readouts, lists to download, and the campaign builder, in a
browser, for campaign staff. Server-rendered with Flask and the project's Jinja2 templates; see docs/staff-app.md."""
