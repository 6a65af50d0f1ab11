"""Local stand-ins for Service Bus, Voice Live and Blob Storage, reached by the real SDKs on loopback."""
