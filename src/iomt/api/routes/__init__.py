"""The JSON API and FHIR routers, one module per resource."""
