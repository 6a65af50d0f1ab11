#!/bin/sh
# azd postprovision hook (POSIX): print how to send a first job to the freshly provisioned queue.
# azd runs hooks with the environment's values (Bicep outputs) exported; nothing here needs a secret.
set -eu

: "${SERVICEBUS_NAMESPACE:?run through azd (azd provision / azd up), which exports the Bicep outputs}"
: "${STORAGE_ACCOUNT_NAME:?missing Bicep output STORAGE_ACCOUNT_NAME}"
: "${STORAGE_ACCOUNT_URL:?missing Bicep output STORAGE_ACCOUNT_URL}"
INPUT_CONTAINER="${INPUT_CONTAINER:-input}"
SERVICEBUS_QUEUE="${SERVICEBUS_QUEUE:-audio-jobs}"
BLOB_URL="${STORAGE_ACCOUNT_URL%/}/${INPUT_CONTAINER}/sample.wav"

cat <<MSG

Provisioned. The worker scales on queue '${SERVICEBUS_QUEUE}' in ${SERVICEBUS_NAMESPACE}
(it deploys with 'azd deploy', which 'azd up' runs next).

Send a first job (your az/azd login is used; no keys):

  az storage blob upload --auth-mode login --account-name ${STORAGE_ACCOUNT_NAME} \\
      --container-name ${INPUT_CONTAINER} --name sample.wav --file ./sample.wav
  set -a; eval "\$(azd env get-values)"; set +a
  voicelive-worker enqueue --input ${BLOB_URL}
  voicelive-worker status <JOB_ID printed by enqueue>

Role assignments can take a few minutes to apply after the first provision.
MSG
