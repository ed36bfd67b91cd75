//! Delivery: runs system jobs and serves notification-service posts through the endpoint clients. Being written.
