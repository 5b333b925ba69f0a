"""Elasticsearch and OpenSearch support: the client layer, the alert mappings, Kibana objects."""
