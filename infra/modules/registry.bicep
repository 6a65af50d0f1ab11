// Container registry for `azd deploy` (remote build). No admin user: the worker pulls with its
// identity (AcrPull on this registry only).
param name string
param location string
param tags object = {}

@description('Principal id of the worker identity (gets AcrPull on this registry).')
param workerPrincipalId string

@allowed([
  'Basic'
  'Standard'
  'Premium'
])
param sku string = 'Basic'

resource registry 'Microsoft.ContainerRegistry/registries@2023-07-01' = {
  // checkov:skip=CKV_AZURE_139:ACR Tasks (azd remote build) and a Container Apps environment without a VNet pull over the public endpoint; pushes and pulls still need Entra tokens (admin user and anonymous pull are off). Private endpoints need Premium + a VNet: see docs/deploy.md "Hardening".
  // checkov:skip=CKV_AZURE_163:Image vulnerability scanning is Microsoft Defender for Containers, a subscription-level plan, not a registry property; enable it per subscription (docs/deploy.md "Hardening").
  // checkov:skip=CKV_AZURE_166:Quarantine is a Premium-only preview feature; images come only from this repo's azd remote build.
  name: name
  location: location
  tags: tags
  sku: {
    name: sku
  }
  properties: {
    adminUserEnabled: false
    anonymousPullEnabled: false
    publicNetworkAccess: 'Enabled'
  }
}

resource workerAcrPull 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(registry.id, workerPrincipalId, '7f951dda-4ed3-4680-a7ca-43fe172d538d')
  scope: registry
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '7f951dda-4ed3-4680-a7ca-43fe172d538d')
    principalId: workerPrincipalId
    principalType: 'ServicePrincipal'
  }
}

output name string = registry.name
output id string = registry.id
output loginServer string = registry.properties.loginServer
