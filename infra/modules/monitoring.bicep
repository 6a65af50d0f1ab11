// Log Analytics + workspace-based Application Insights with local (key) auth off: telemetry is
// ingested with an Entra token (APPLICATIONINSIGHTS_AUTHENTICATION_STRING in the worker).
param logAnalyticsName string
param appInsightsName string
param location string
param tags object = {}

@description('Principal id of the worker identity (gets Monitoring Metrics Publisher on App Insights).')
param workerPrincipalId string

@description('Principal id of the deploying user; empty to skip. Gets Monitoring Metrics Publisher so traces from `voicelive-worker enqueue` reach the same App Insights.')
param userPrincipalId string = ''
param userPrincipalType string = 'User'

@minValue(30)
@maxValue(730)
param retentionInDays int = 30

resource logAnalytics 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: logAnalyticsName
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: retentionInDays
    features: {
      disableLocalAuth: true
    }
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: appInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'other'
    WorkspaceResourceId: logAnalytics.id
    DisableLocalAuth: true
    IngestionMode: 'LogAnalytics'
  }
}

// Monitoring Metrics Publisher: Entra-authenticated ingestion into this App Insights resource only.
resource workerMetricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, workerPrincipalId, '3913510d-42f4-4e42-8a64-420c390055eb')
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '3913510d-42f4-4e42-8a64-420c390055eb')
    principalId: workerPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource userMetricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(userPrincipalId)) {
  name: guid(appInsights.id, userPrincipalId, '3913510d-42f4-4e42-8a64-420c390055eb')
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '3913510d-42f4-4e42-8a64-420c390055eb')
    principalId: userPrincipalId
    principalType: userPrincipalType
  }
}

output logAnalyticsWorkspaceId string = logAnalytics.id
output appInsightsId string = appInsights.id
output appInsightsName string = appInsights.name
// Not a secret (it names the resource and ingestion endpoint; ingestion needs an Entra token because
// local auth is off). The worker still receives it as a container-app secret so it stays out of
// revision listings.
output appInsightsConnectionString string = appInsights.properties.ConnectionString
