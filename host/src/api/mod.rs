//! The HTTP API (Dataverse Web API shape). Being written.
