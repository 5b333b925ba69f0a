"""The built-in web view (`siem-gad ui`): `stores` reads alerts and incidents from a sink,
`svg` draws evidence graphs and timelines, `web` serves the pages."""
