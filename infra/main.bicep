// Entry point for `azd provision`: one resource group with everything the worker needs, wired by
// managed identity only (no keys, no connection strings, no admin users). See docs/deploy.md.
targetScope = 'subscription'

// ---------------------------------------------------------------------------------------------------
// azd-provided
// ---------------------------------------------------------------------------------------------------

@minLength(1)
@maxLength(64)
@description('Name of the azd environment; used to name the resource group and derive resource names.')
param environmentName string

@minLength(1)
@description('Azure region for all resources (pick one where Voice Live is available, or point at an existing Voice Live resource).')
param location string

@description('Object id of the person or pipeline running azd (AZURE_PRINCIPAL_ID). Gets the roles needed to enqueue jobs, upload input audio and read results. Empty to skip.')
param principalId string = ''

@allowed([
  'User'
  'ServicePrincipal'
  'Group'
])
@description('Kind of principal in principalId.')
param principalType string = 'User'

@description('True once the worker container app exists (azd sets SERVICE_WORKER_RESOURCE_EXISTS); keeps the deployed image on re-provision.')
param workerExists bool = false

// ---------------------------------------------------------------------------------------------------
// Worker sizing and behaviour (become the worker's environment variables)
// ---------------------------------------------------------------------------------------------------

@minValue(1)
@maxValue(1000)
@description('MAX_CONCURRENT_JOBS: Voice Live sessions per replica. Also the KEDA messageCount: one replica per this many waiting jobs.')
param maxConcurrentJobs int = 4

@minValue(0)
@maxValue(1000)
@description('Minimum replicas. 0 = scale to zero when the queue is empty (cold start of about one KEDA polling interval plus image start).')
param minReplicas int = 0

@minValue(1)
@maxValue(1000)
@description('Maximum replicas. Keep maxReplicas x maxConcurrentJobs within the Voice Live resource limits (new connections per minute, tokens per minute).')
param maxReplicas int = 10

@minValue(0)
@maxValue(570)
@description('SHUTDOWN_GRACE_S: seconds in-flight jobs get to finish after SIGTERM. The container app grace period is this plus a settle margin (ACA allows at most 600 s).')
param shutdownGraceSeconds int = 240

@minValue(1)
@maxValue(100)
@description('MAX_ATTEMPTS: transient-failure retries before a job is dead-lettered.')
param maxAttempts int = 5

@minValue(1)
@maxValue(10000)
@description('VOICELIVE_CONNECTS_PER_MINUTE per replica (the service allows 30 new connections per minute per resource: share it across replicas).')
param voiceLiveConnectsPerMinute int = 3

@description('VOICELIVE_MODEL used when a job does not name one.')
param voiceLiveModel string = 'gpt-realtime'

@description('CPU cores per replica (Consumption profile: 0.25 steps up to 4).')
param workerCpu string = '1.0'

@description('Memory per replica; must match the CPU (2 GiB per core on Consumption).')
param workerMemory string = '2Gi'

@description('Create an optional results queue (RESULTS_QUEUE) that gets {job_id, status, reason, manifest_url} per finished job.')
param createResultsQueue bool = true

@minValue(1)
@maxValue(2000)
@description('Service Bus MaxDeliveryCount for the jobs queue (lock lost or crash redeliveries before the broker dead-letters).')
param maxDeliveryCount int = 10

// ---------------------------------------------------------------------------------------------------
// Voice Live: create an AIServices account, or use an existing one
// ---------------------------------------------------------------------------------------------------

@description('Endpoint of an existing Voice Live (AIServices / Foundry) resource, e.g. https://myres.services.ai.azure.com. Empty = create a new AIServices account.')
param existingVoiceLiveEndpoint string = ''

@description('ARM resource id of that existing account (/subscriptions/.../providers/Microsoft.CognitiveServices/accounts/NAME). When set, the worker identity gets Cognitive Services User on it; when empty, grant that role yourself.')
param existingVoiceLiveResourceId string = ''

@description('Region of the new AIServices account; empty = location. Voice Live is not in every region.')
param voiceLiveLocation string = ''

// ---------------------------------------------------------------------------------------------------
// Names
// ---------------------------------------------------------------------------------------------------

var tags = {
  'azd-env-name': environmentName
  app: 'voicelive-batch-worker'
}
var token = toLower(uniqueString(subscription().id, environmentName, location))
var jobsQueueName = 'audio-jobs'
var resultsQueueName = 'audio-results'
var inputContainerName = 'input'
var resultsContainerName = 'results'
var useExistingVoiceLive = !empty(existingVoiceLiveEndpoint)
// Split the existing account id; a dummy id keeps the indexes valid when none is given.
var existingVoiceLiveIdParts = split(empty(existingVoiceLiveResourceId) ? '/subscriptions/${subscription().subscriptionId}/resourceGroups/rg-${environmentName}/providers/Microsoft.CognitiveServices/accounts/none' : existingVoiceLiveResourceId, '/')

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: 'rg-${environmentName}'
  location: location
  tags: tags
}

module identity 'modules/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: 'id-worker-${token}'
    location: location
    tags: tags
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: 'log-${token}'
    appInsightsName: 'appi-${token}'
    location: location
    tags: tags
    workerPrincipalId: identity.outputs.principalId
    userPrincipalId: principalId
    userPrincipalType: principalType
  }
}

module registry 'modules/registry.bicep' = {
  name: 'registry'
  scope: rg
  params: {
    name: 'cr${token}'
    location: location
    tags: tags
    workerPrincipalId: identity.outputs.principalId
  }
}

module servicebus 'modules/servicebus.bicep' = {
  name: 'servicebus'
  scope: rg
  params: {
    name: 'sb-${token}'
    location: location
    tags: tags
    jobsQueueName: jobsQueueName
    resultsQueueName: resultsQueueName
    createResultsQueue: createResultsQueue
    maxDeliveryCount: maxDeliveryCount
    workerPrincipalId: identity.outputs.principalId
    userPrincipalId: principalId
    userPrincipalType: principalType
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: 'st${token}'
    location: location
    tags: tags
    inputContainerName: inputContainerName
    resultsContainerName: resultsContainerName
    workerPrincipalId: identity.outputs.principalId
    userPrincipalId: principalId
    userPrincipalType: principalType
  }
}

module aiservices 'modules/aiservices.bicep' = if (!useExistingVoiceLive) {
  name: 'aiservices'
  scope: rg
  params: {
    name: 'ai-${token}'
    location: empty(voiceLiveLocation) ? location : voiceLiveLocation
    tags: tags
    workerPrincipalId: identity.outputs.principalId
    userPrincipalId: principalId
    userPrincipalType: principalType
  }
}

// Existing Voice Live resource, possibly in another resource group or subscription: grant the worker
// Cognitive Services User on exactly that account.
module existingVoiceLiveRole 'modules/voicelive-role.bicep' = if (useExistingVoiceLive && !empty(existingVoiceLiveResourceId)) {
  name: 'existing-voicelive-role'
  scope: resourceGroup(existingVoiceLiveIdParts[2], existingVoiceLiveIdParts[4])
  params: {
    accountName: existingVoiceLiveIdParts[8]
    workerPrincipalId: identity.outputs.principalId
  }
}

module appsEnv 'modules/containerapps-env.bicep' = {
  name: 'containerapps-env'
  scope: rg
  params: {
    name: 'cae-${token}'
    location: location
    tags: tags
    logAnalyticsWorkspaceId: monitoring.outputs.logAnalyticsWorkspaceId
  }
}

module worker 'modules/worker-app.bicep' = {
  name: 'worker-app'
  scope: rg
  params: {
    name: 'ca-worker-${token}'
    location: location
    tags: tags
    exists: workerExists
    environmentId: appsEnv.outputs.id
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    registryLoginServer: registry.outputs.loginServer
    serviceBusNamespaceName: servicebus.outputs.name
    serviceBusFqdn: servicebus.outputs.fqdn
    jobsQueueName: servicebus.outputs.jobsQueueName
    resultsQueueName: createResultsQueue ? resultsQueueName : ''
    storageAccountUrl: storage.outputs.blobEndpoint
    allowedInputContainers: '${storage.outputs.name}/${inputContainerName}'
    resultsContainerName: resultsContainerName
    voiceLiveEndpoint: useExistingVoiceLive ? existingVoiceLiveEndpoint : aiservices!.outputs.endpoint
    voiceLiveModel: voiceLiveModel
    voiceLiveConnectsPerMinute: voiceLiveConnectsPerMinute
    appInsightsConnectionString: monitoring.outputs.appInsightsConnectionString
    maxConcurrentJobs: maxConcurrentJobs
    maxAttempts: maxAttempts
    shutdownGraceSeconds: shutdownGraceSeconds
    minReplicas: minReplicas
    maxReplicas: maxReplicas
    cpu: workerCpu
    memory: workerMemory
  }
}

// ---------------------------------------------------------------------------------------------------
// Outputs: azd stores these in .azure/<env>/.env; the CLI and the postprovision hook read them.
// Names match the worker's settings (DESIGN.md §14) so `azd env get-values` can be sourced as is.
// ---------------------------------------------------------------------------------------------------

output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_CONTAINER_REGISTRY_ENDPOINT string = registry.outputs.loginServer
output AZURE_CONTAINER_REGISTRY_NAME string = registry.outputs.name
output AZURE_CONTAINER_APPS_ENVIRONMENT_ID string = appsEnv.outputs.id
output AZURE_CONTAINER_APPS_ENVIRONMENT_NAME string = appsEnv.outputs.name
output SERVICE_WORKER_NAME string = worker.outputs.name
output AZURE_WORKER_IDENTITY_CLIENT_ID string = identity.outputs.clientId
output SERVICEBUS_NAMESPACE string = servicebus.outputs.fqdn
output SERVICEBUS_QUEUE string = servicebus.outputs.jobsQueueName
output RESULTS_QUEUE string = createResultsQueue ? resultsQueueName : ''
output STORAGE_ACCOUNT_NAME string = storage.outputs.name
output STORAGE_ACCOUNT_URL string = storage.outputs.blobEndpoint
output INPUT_CONTAINER string = inputContainerName
output RESULTS_CONTAINER string = resultsContainerName
output ALLOWED_INPUT_CONTAINERS string = '${storage.outputs.name}/${inputContainerName}'
output VOICELIVE_ENDPOINT string = useExistingVoiceLive ? existingVoiceLiveEndpoint : aiservices!.outputs.endpoint
output VOICELIVE_MODEL string = voiceLiveModel
output APPLICATIONINSIGHTS_CONNECTION_STRING string = monitoring.outputs.appInsightsConnectionString
