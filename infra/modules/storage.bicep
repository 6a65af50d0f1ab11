// Storage account with shared key access off (Entra only), TLS 1.2, no public blob access; the input
// and results containers and the container-scoped data roles.
param name string
param location string
param tags object = {}
param inputContainerName string
param resultsContainerName string

@description('Principal id of the worker identity.')
param workerPrincipalId string

@description('Principal id of the deploying user; empty to skip.')
param userPrincipalId string = ''
param userPrincipalType string = 'User'

var blobReaderRoleId = '2a2b9908-6ea1-4ae2-8e65-a410df84e7d1' // Storage Blob Data Reader
var blobContributorRoleId = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe' // Storage Blob Data Contributor

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_35:The worker (no VNet) and the people uploading input audio reach Blob over the public endpoint; shared keys and anonymous access are off, so every request needs an Entra token with a container-scoped role. Firewall/private endpoint: docs/deploy.md "Hardening".
  // checkov:skip=CKV_AZURE_59:Same reason as CKV_AZURE_35: public network access is needed without a VNet; authorization is Entra-only (allowSharedKeyAccess false, allowBlobPublicAccess false).
  // checkov:skip=CKV_AZURE_206:LRS on purpose (cost): inputs are copies of recordings and results can be re-created by re-running the job. Use Standard_ZRS/GRS in production if results must survive a zone/region loss.
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    accessTier: 'Hot'
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: 7
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

resource inputContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: inputContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource resultsContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: resultsContainerName
  properties: {
    publicAccess: 'None'
  }
}

// Worker: read input audio, only in the input container.
resource workerInputReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(inputContainer.id, workerPrincipalId, blobReaderRoleId)
  scope: inputContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '2a2b9908-6ea1-4ae2-8e65-a410df84e7d1')
    principalId: workerPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Worker: write artifacts and the manifest, only in the results container.
resource workerResultsContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(resultsContainer.id, workerPrincipalId, blobContributorRoleId)
  scope: resultsContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', 'ba92f5b4-2d11-453d-a403-e96b0029c9fe')
    principalId: workerPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Deploying user: upload input audio.
resource userInputContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(userPrincipalId)) {
  name: guid(inputContainer.id, userPrincipalId, blobContributorRoleId)
  scope: inputContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', 'ba92f5b4-2d11-453d-a403-e96b0029c9fe')
    principalId: userPrincipalId
    principalType: userPrincipalType
  }
}

// Deploying user: read results (`voicelive-worker status`).
resource userResultsReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(userPrincipalId)) {
  name: guid(resultsContainer.id, userPrincipalId, blobReaderRoleId)
  scope: resultsContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '2a2b9908-6ea1-4ae2-8e65-a410df84e7d1')
    principalId: userPrincipalId
    principalType: userPrincipalType
  }
}

output name string = account.name
output id string = account.id
output blobEndpoint string = account.properties.primaryEndpoints.blob
