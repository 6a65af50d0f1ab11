// AIServices (Foundry) account for Voice Live: custom subdomain (needed for Entra tokens), local
// (key) auth off, and Cognitive Services User for the worker on this account only.
param name string
param location string
param tags object = {}

@description('Principal id of the worker identity (gets Cognitive Services User on this account).')
param workerPrincipalId string

@description('Principal id of the deploying user; empty to skip (gets Cognitive Services User for local `voicelive-worker process` runs).')
param userPrincipalId string = ''
param userPrincipalType string = 'User'

var cognitiveServicesUserRoleId = 'a97b65f3-24c7-4388-baec-2e87135dc908' // Cognitive Services User

resource account 'Microsoft.CognitiveServices/accounts@2024-10-01' = {
  // checkov:skip=CKV_AZURE_134:The worker runs in a Container Apps environment without a VNet and reaches Voice Live over the public endpoint; key auth is disabled, so every call needs an Entra token with Cognitive Services User on this account. Private endpoint: docs/deploy.md "Hardening".
  name: name
  location: location
  tags: tags
  kind: 'AIServices'
  sku: {
    name: 'S0'
  }
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    customSubDomainName: name
    disableLocalAuth: true
    publicNetworkAccess: 'Enabled'
  }
}

resource workerCognitiveServicesUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(account.id, workerPrincipalId, cognitiveServicesUserRoleId)
  scope: account
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', 'a97b65f3-24c7-4388-baec-2e87135dc908')
    principalId: workerPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource userCognitiveServicesUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(userPrincipalId)) {
  name: guid(account.id, userPrincipalId, cognitiveServicesUserRoleId)
  scope: account
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', 'a97b65f3-24c7-4388-baec-2e87135dc908')
    principalId: userPrincipalId
    principalType: userPrincipalType
  }
}

output name string = account.name
output id string = account.id
// Voice Live endpoint (resource root; the SDK appends /voice-live/realtime).
output endpoint string = 'https://${name}.services.ai.azure.com'
