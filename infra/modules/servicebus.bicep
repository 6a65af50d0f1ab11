// Service Bus namespace with local (SAS key) auth off, the jobs queue and the optional results queue,
// and the queue-scoped data roles for the worker, KEDA and the deploying user.
param name string
param location string
param tags object = {}
param jobsQueueName string
param resultsQueueName string
param createResultsQueue bool = true

@minValue(1)
@maxValue(2000)
param maxDeliveryCount int = 10

@description('Duplicate detection window on the jobs queue (message_id = job_id). Retry copies and DLQ redrives must use a different message_id.')
param duplicateDetectionWindow string = 'PT10M'

@description('Jobs not picked up within this time are dead-lettered (deadLetteringOnMessageExpiration).')
param jobTimeToLive string = 'P7D'

@description('Principal id of the worker identity.')
param workerPrincipalId string

@description('Principal id of the deploying user; empty to skip.')
param userPrincipalId string = ''
param userPrincipalType string = 'User'

var receiverRoleId = '4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0' // Azure Service Bus Data Receiver
var senderRoleId = '69a216fc-b8fb-44d8-bc22-1f3c2cd27a39' // Azure Service Bus Data Sender
var ownerRoleId = '090c5cfd-751d-490a-894a-3ce6f1109419' // Azure Service Bus Data Owner

resource namespace 'Microsoft.ServiceBus/namespaces@2024-01-01' = {
  name: name
  location: location
  tags: tags
  sku: {
    // Standard: duplicate detection and scheduled messages; Basic has neither.
    name: 'Standard'
    tier: 'Standard'
  }
  properties: {
    disableLocalAuth: true
    minimumTlsVersion: '1.2'
    publicNetworkAccess: 'Enabled'
  }
}

resource jobsQueue 'Microsoft.ServiceBus/namespaces/queues@2024-01-01' = {
  parent: namespace
  name: jobsQueueName
  properties: {
    lockDuration: 'PT5M'
    maxDeliveryCount: maxDeliveryCount
    deadLetteringOnMessageExpiration: true
    defaultMessageTimeToLive: jobTimeToLive
    requiresDuplicateDetection: true
    duplicateDetectionHistoryTimeWindow: duplicateDetectionWindow
    requiresSession: false
    enableBatchedOperations: true
  }
}

resource resultsQueue 'Microsoft.ServiceBus/namespaces/queues@2024-01-01' = if (createResultsQueue) {
  parent: namespace
  name: resultsQueueName
  properties: {
    lockDuration: 'PT1M'
    maxDeliveryCount: maxDeliveryCount
    deadLetteringOnMessageExpiration: true
    defaultMessageTimeToLive: jobTimeToLive
    requiresSession: false
    enableBatchedOperations: true
  }
}

// Worker: receive and settle jobs (includes the jobs queue's $DeadLetterQueue for `dlq` commands).
resource workerJobsReceiver 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(jobsQueue.id, workerPrincipalId, receiverRoleId)
  scope: jobsQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0')
    principalId: workerPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Worker: send scheduled retry copies back to the jobs queue.
resource workerJobsSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(jobsQueue.id, workerPrincipalId, senderRoleId)
  scope: jobsQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '69a216fc-b8fb-44d8-bc22-1f3c2cd27a39')
    principalId: workerPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Worker: publish {job_id, status, reason, manifest_url} to the results queue.
resource workerResultsSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (createResultsQueue) {
  name: guid(resultsQueue.id, workerPrincipalId, senderRoleId)
  scope: resultsQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '69a216fc-b8fb-44d8-bc22-1f3c2cd27a39')
    principalId: workerPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// KEDA (same identity, the scale rule's `identity`): the azure-servicebus scaler reads the queue's
// active-message count through the management (runtime properties) API, which needs Manage rights;
// the built-in role that grants them is Data Owner. Scoped to the jobs queue only, so it adds no
// access to any other entity. See docs/deploy.md "Roles".
resource kedaJobsOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(jobsQueue.id, workerPrincipalId, ownerRoleId)
  scope: jobsQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '090c5cfd-751d-490a-894a-3ce6f1109419')
    principalId: workerPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Deploying user: `voicelive-worker enqueue` (send) and `dlq list|redrive` (receive) on the jobs queue.
resource userJobsSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(userPrincipalId)) {
  name: guid(jobsQueue.id, userPrincipalId, senderRoleId)
  scope: jobsQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '69a216fc-b8fb-44d8-bc22-1f3c2cd27a39')
    principalId: userPrincipalId
    principalType: userPrincipalType
  }
}

resource userJobsReceiver 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(userPrincipalId)) {
  name: guid(jobsQueue.id, userPrincipalId, receiverRoleId)
  scope: jobsQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0')
    principalId: userPrincipalId
    principalType: userPrincipalType
  }
}

resource userResultsReceiver 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (createResultsQueue && !empty(userPrincipalId)) {
  name: guid(resultsQueue.id, userPrincipalId, receiverRoleId)
  scope: resultsQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0')
    principalId: userPrincipalId
    principalType: userPrincipalType
  }
}

output name string = namespace.name
output id string = namespace.id
// e.g. https://sb-x.servicebus.windows.net:443/ -> sb-x.servicebus.windows.net (SERVICEBUS_NAMESPACE)
output fqdn string = split(replace(namespace.properties.serviceBusEndpoint, 'https://', ''), ':')[0]
output jobsQueueName string = jobsQueue.name
