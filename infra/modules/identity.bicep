// The worker's single user-assigned identity: it pulls the image, reads the queue (and KEDA scales by
// it), reads input blobs, writes results, calls Voice Live and publishes telemetry.
param name string
param location string
param tags object = {}

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output id string = identity.id
output name string = identity.name
output principalId string = identity.properties.principalId
output clientId string = identity.properties.clientId
