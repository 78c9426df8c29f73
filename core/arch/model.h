/* model.h (private to core/): what the engine reads from a loaded model.
 *
 * model.c owns LdmModel: the tensor file, the architecture (from a config beside the file or
 * recognised from the tensors) and, once every parameter has been checked for presence and
 * shape, the map from each sub-model's own parameter names to the file's tensors. */
#pragma once

#include "arch/model_config.h"
#include "io/tensor_file.h"

struct LdmModel {
    LdmTensorFile  *file;
    LdmModelConfig  config;
    char           *config_path;      /* the config file used, NULL when recognised */
    bool            uses_ema;         /* U-Net from model_ema.* (LitEma names) */
    GHashTable     *unet;             /* U-Net parameter name -> tensor (borrowed from file) */
    GHashTable     *first_stage;      /* first-stage parameter name -> tensor */
    int64_t         unet_params, first_stage_params, cond_stage_params;
    size_t          cond_stage_tensors;
    unsigned        unet_dtypes, first_stage_dtypes; /* bit (1 << LdmDType) per dtype seen */
};

/* A U-Net parameter by its UNetModel name ("input_blocks.1.0.in_layers.2.weight"), resolved
 * to the EMA copy when the model uses EMA weights. NULL for a name the architecture lacks.
 * `model` is a const LdmModel *: the signature is a Weights lookup's (nn/weights.h). */
const LdmTensor *model_unet_tensor (const void *model, const char *name);

/* A first-stage parameter by its autoencoder name ("decoder.conv_in.weight"); a Weights
 * lookup like model_unet_tensor. */
const LdmTensor *model_first_stage_tensor (const void *model, const char *name);

/* A conditioning-stage tensor by its name under cond_stage_model. (not checked at load). */
const LdmTensor *model_cond_stage_tensor (const LdmModel *model, const char *name);

const LdmModelConfig *model_config (const LdmModel *model);
const LdmTensorFile  *model_file   (const LdmModel *model);
