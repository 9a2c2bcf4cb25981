"""Singer tap for the Pipedrive CRM."""
