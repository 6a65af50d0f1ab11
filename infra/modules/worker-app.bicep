// The worker container app: runs as the user-assigned identity (image pull, Service Bus, Blob,
// Voice Live, telemetry), scales on the jobs queue with a KEDA azure-servicebus rule authenticated by
// that identity, and gets a termination grace period long enough to drain in-flight jobs.
param name string
param location string
param tags object = {}

@description('True when the app already exists: keep its current image instead of the placeholder.')
param exists bool = false
param environmentId string
param identityId string
param identityClientId string
param registryLoginServer string
param serviceBusNamespaceName string
param serviceBusFqdn string
param jobsQueueName string

@description('Empty = no results queue.')
param resultsQueueName string = ''
param storageAccountUrl string
param allowedInputContainers string
param resultsContainerName string
param voiceLiveEndpoint string
param voiceLiveModel string
param voiceLiveConnectsPerMinute int

@secure()
@description('Application Insights connection string (not a key: ingestion is Entra-authenticated).')
param appInsightsConnectionString string

@minValue(1)
@maxValue(1000)
param maxConcurrentJobs int

@minValue(1)
@maxValue(100)
param maxAttempts int

@minValue(0)
@maxValue(570)
param shutdownGraceSeconds int

@minValue(0)
@maxValue(1000)
param minReplicas int

@minValue(1)
@maxValue(1000)
param maxReplicas int
param cpu string = '1.0'
param memory string = '2Gi'

@description('Image used before the first `azd deploy` (azd replaces it).')
param placeholderImage string = 'mcr.microsoft.com/azuredocs/containerapps-helloworld:latest'

var healthPort = 8080

// SIGTERM -> stop receiving, give in-flight jobs SHUTDOWN_GRACE_S, then settle/abandon and close the
// AMQP links: the platform must wait at least that long before SIGKILL.
var settleMarginSeconds = 30
var terminationGracePeriodSeconds = shutdownGraceSeconds + settleMarginSeconds

resource existingApp 'Microsoft.App/containerApps@2025-01-01' existing = if (exists) {
  name: name
}

var baseEnv = [
  { name: 'SERVICEBUS_NAMESPACE', value: serviceBusFqdn }
  { name: 'SERVICEBUS_QUEUE', value: jobsQueueName }
  { name: 'STORAGE_ACCOUNT_URL', value: storageAccountUrl }
  { name: 'RESULTS_CONTAINER', value: resultsContainerName }
  { name: 'ALLOWED_INPUT_CONTAINERS', value: allowedInputContainers }
  { name: 'VOICELIVE_ENDPOINT', value: voiceLiveEndpoint }
  { name: 'VOICELIVE_MODEL', value: voiceLiveModel }
  { name: 'VOICELIVE_CONNECTS_PER_MINUTE', value: string(voiceLiveConnectsPerMinute) }
  { name: 'MAX_CONCURRENT_JOBS', value: string(maxConcurrentJobs) }
  { name: 'MAX_ATTEMPTS', value: string(maxAttempts) }
  { name: 'SHUTDOWN_GRACE_S', value: string(shutdownGraceSeconds) }
  { name: 'HEALTH_PORT', value: string(healthPort) }
  { name: 'APPLICATIONINSIGHTS_CONNECTION_STRING', secretRef: 'appinsights-connection-string' }
  { name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING', value: 'Authorization=AAD;ClientId=${identityClientId}' }
  { name: 'OTEL_SERVICE_NAME', value: 'voicelive-worker' }
  { name: 'TRACE_CONTENT', value: 'false' }
  { name: 'AZURE_CLIENT_ID', value: identityClientId }
  { name: 'AZURE_TOKEN_CREDENTIALS', value: 'ManagedIdentityCredential' }
]
var resultsEnv = empty(resultsQueueName) ? [] : [
  { name: 'RESULTS_QUEUE', value: resultsQueueName }
]

resource app 'Microsoft.App/containerApps@2025-01-01' = {
  name: name
  location: location
  tags: union(tags, { 'azd-service-name': 'worker' })
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    managedEnvironmentId: environmentId
    workloadProfileName: 'Consumption'
    configuration: {
      activeRevisionsMode: 'Single'
      // No ingress: the worker pulls from the queue; probes reach the health server directly.
      registries: [
        {
          server: registryLoginServer
          identity: identityId
        }
      ]
      secrets: [
        {
          name: 'appinsights-connection-string'
          value: appInsightsConnectionString
        }
      ]
    }
    template: {
      terminationGracePeriodSeconds: terminationGracePeriodSeconds
      containers: [
        {
          name: 'worker'
          image: exists ? existingApp!.properties.template.containers[0].image : placeholderImage
          args: [
            'run'
          ]
          resources: {
            cpu: json(cpu)
            memory: memory
          }
          env: concat(baseEnv, resultsEnv)
          probes: [
            {
              type: 'Startup'
              httpGet: {
                path: '/healthz'
                port: healthPort
              }
              periodSeconds: 5
              failureThreshold: 24
              timeoutSeconds: 3
            }
            {
              type: 'Liveness'
              httpGet: {
                path: '/healthz'
                port: healthPort
              }
              periodSeconds: 30
              failureThreshold: 3
              timeoutSeconds: 5
            }
            {
              type: 'Readiness'
              httpGet: {
                path: '/readyz'
                port: healthPort
              }
              periodSeconds: 10
              failureThreshold: 3
              timeoutSeconds: 3
            }
          ]
        }
      ]
      scale: {
        minReplicas: minReplicas
        maxReplicas: maxReplicas
        pollingInterval: 30
        cooldownPeriod: 300
        rules: [
          {
            name: 'jobs-queue'
            custom: {
              type: 'azure-servicebus'
              // Managed identity, no connection-string secret: the scaler reads the queue with this
              // user-assigned identity (Data Owner on the jobs queue, see servicebus.bicep).
              identity: identityId
              metadata: {
                namespace: serviceBusNamespaceName
                queueName: jobsQueueName
                // One replica per MAX_CONCURRENT_JOBS waiting jobs: every replica's slots fill up.
                messageCount: string(maxConcurrentJobs)
                activationMessageCount: '0'
              }
            }
          }
        ]
      }
    }
  }
}

output name string = app.name
output id string = app.id
