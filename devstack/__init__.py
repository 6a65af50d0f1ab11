"""Local stand-ins for Service Bus, Voice Live and Blob Storage, reached by the real Azure SDKs on loopback."""
