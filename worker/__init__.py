"""Voice Live batch worker: Service Bus jobs → paced Voice Live sessions → Blob artifacts."""
