# azd postprovision hook (Windows / pwsh): print how to send a first job to the freshly provisioned queue.
# azd runs hooks with the environment's values (Bicep outputs) exported; nothing here needs a secret.
$ErrorActionPreference = 'Stop'

foreach ($name in 'SERVICEBUS_NAMESPACE', 'STORAGE_ACCOUNT_NAME', 'STORAGE_ACCOUNT_URL') {
    if (-not [Environment]::GetEnvironmentVariable($name)) {
        throw "$name is not set: run through azd (azd provision / azd up), which exports the Bicep outputs"
    }
}
$inputContainer = if ($env:INPUT_CONTAINER) { $env:INPUT_CONTAINER } else { 'input' }
$queue = if ($env:SERVICEBUS_QUEUE) { $env:SERVICEBUS_QUEUE } else { 'audio-jobs' }
$blobUrl = "$($env:STORAGE_ACCOUNT_URL.TrimEnd('/'))/$inputContainer/sample.wav"

Write-Host @"

Provisioned. The worker scales on queue '$queue' in $($env:SERVICEBUS_NAMESPACE)
(it deploys with 'azd deploy', which 'azd up' runs next).

Send a first job (your az/azd login is used; no keys):

  az storage blob upload --auth-mode login --account-name $($env:STORAGE_ACCOUNT_NAME) ``
      --container-name $inputContainer --name sample.wav --file ./sample.wav
  azd env get-values | ForEach-Object { `$k, `$v = `$_ -split '=', 2; Set-Item "env:`$k" `$v.Trim('"') }
  voicelive-worker enqueue --input $blobUrl
  voicelive-worker status <JOB_ID printed by enqueue>

Role assignments can take a few minutes to apply after the first provision.
"@
